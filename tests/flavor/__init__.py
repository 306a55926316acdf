"""Tests of the flavor (schematic) model: decoder, canonical emitter, IDs."""
