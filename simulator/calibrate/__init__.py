"""Calibration of the step-time model: loaders for the real measurements it is fitted and checked on."""
