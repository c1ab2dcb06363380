"""XPCS homodyne analysis of two-time correlations"""
