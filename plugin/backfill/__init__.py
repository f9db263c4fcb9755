"""Backfill: historical spec messages or person->group rows through the contract, out to Customer.io."""
