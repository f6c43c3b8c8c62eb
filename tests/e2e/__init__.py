"""End-to-end tests: a real Keystone started through kolla-entry (issue #4)."""
