"""`groupspec groups migrate`: group id renames and merges (the map, its checks, the plan, the command)."""
