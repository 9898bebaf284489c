"""Models behind one interface: `base.Model`. `registry` maps names to loaders."""
