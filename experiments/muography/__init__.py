"""muon scattering tomography: imaging and detector design"""
