"""groupspec plugin: Customer.io mapping and delivery, the HTTP service, replay and the CLI."""
