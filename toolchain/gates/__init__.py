"""The gates, one module each, in the order a submission meets them."""
