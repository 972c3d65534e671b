"""dcgan: a GAN training framework; the tutorial's DCGAN on MNIST under Accelerate."""

__version__ = "0.1.0"
