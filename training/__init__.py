"""Training: data sets, VGG-19 perceptual/style losses, staged trainers, metrics.

Empty until the training work lands.
"""
