"""Model cards, safetensors weights with checksums, the network built from a card, and the choices the panel offers."""
