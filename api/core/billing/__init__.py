"""Billing core: usage records, tariffs and cost pools in; charge lines and invoice documents out (integer money)."""
