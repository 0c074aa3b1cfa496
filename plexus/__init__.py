"""plexus: connect two machines behind NAT with no VPN server and no port forwarding.

Pipeline, one subpackage per stage: profile -> nat -> rendezvous -> punch -> launch.
"""

__version__ = "0.1.0"
