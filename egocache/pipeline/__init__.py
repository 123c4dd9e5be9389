"""Dataset adapters, decoding, IMU, teachers, the synthetic generator and the extraction pass."""
