"""What the project reads and writes: files (atomic, hashed, safetensors) and images (grids, PNG folders, arrays)."""
