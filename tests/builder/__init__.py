"""Tests of the builder package."""
