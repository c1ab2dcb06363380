"""storage-ring optics, correction, degeneracy and LOCO"""
