"""The original system's edge functions, answered as they did, for existing clients."""
