"""visual_anomaly: visual anomaly detection for mobile robots."""

__version__ = '0.1.0'
