"""Data: the corridor anomaly taxonomy, the Hazards&Robots dataset reader and image-message decoding."""
