"""Campaigns: the registry, lifecycle, checks, gradual launch, breakers, reviews and access control."""
