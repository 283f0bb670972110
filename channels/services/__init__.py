"""Every write of the channels app, one module per area (dispatch, inbox, tracking, preferences)."""
