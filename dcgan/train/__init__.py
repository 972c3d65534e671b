"""Training: the loop and its periodic actions, one GAN iteration (step), the wiring from the config (build), the
state a checkpoint holds, stopping safely, and the recipe's parts (losses, augmentation, EMA, learning rates)."""
