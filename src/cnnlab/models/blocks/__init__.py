"""Building blocks shared by the zoo families (residual, inception, fractal, squeeze-excitation, ...).

Deliberately import-free: each family imports the block module it needs, so importing one block
module never builds or imports another.
"""
