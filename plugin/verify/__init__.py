"""`groupspec verify`: read groups back from Customer.io's App API and compare them with the store's view."""
