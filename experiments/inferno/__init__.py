"""INFERNO: inference-aware summary statistics"""
