"""Privacy-aware dissemination: router, subscriptions, group keys, admission, aggregator."""
