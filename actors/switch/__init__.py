"""switch"""
