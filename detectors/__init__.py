"""Pure computation over batches of frames: quality, motion, models, rules → events. No I/O."""
