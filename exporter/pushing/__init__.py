"""Pushed callbacks from 8x8 (VNU and VSS webhooks): events, state and the receiver."""
