"""Audio in: decode PCM frames, resample to the model rate, cut overlapping windows."""
