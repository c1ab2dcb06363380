"""the ARES experimental area at DESY: tracking, the two-phase study, tuning"""
