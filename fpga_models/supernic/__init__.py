"""SuperNIC: the switch that runs network tasks on KV bytes, shared fairly among tenants."""
