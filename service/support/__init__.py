"""Support agents: finding a customer's shipments, seeing all there is to know about one
(ETA and why, delay, messages sent, audit log), and the few actions an agent may take."""
