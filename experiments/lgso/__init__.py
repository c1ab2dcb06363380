"""L-GSO: local generative surrogates for black-box simulators"""
