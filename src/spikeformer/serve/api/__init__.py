"""Thin routes: validate, call a service, answer."""
