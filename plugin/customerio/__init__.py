"""The Customer.io destination: the mapping (a table), identifiers, dates, limits and delivery."""
