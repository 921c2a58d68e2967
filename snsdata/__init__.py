"""snsdata: SNS data into training data and rewards for RedOne / RedOne 2.0 post-training."""

__version__ = "0.1.0"
