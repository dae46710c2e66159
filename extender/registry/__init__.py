"""The OCI registry client: find and read an image's compatibility artifact, safely.

Owns everything that crosses the network to a registry: image references, tag → digest
resolution (OCI and Docker media types, platform selection in an index), the referrers API
with the ``sha256-<hex>`` tag-schema fallback (as oras-go, and so ``nfd compat validate-node``,
does), choosing the newest artifact, reading its spec layer with digest and size checks, and
authentication (anonymous bearer tokens, docker ``config.json`` basic auth and identity
tokens, credential helpers, pod pull secrets), mirrors and per-registry TLS settings.
A pod's pull secret is data: its ``credsStore``/``credHelpers`` never run a program.

An image reference names the host we connect to and pod authors choose it, so every
connection goes through :class:`HostPolicy`: link-local and cloud-metadata addresses are
refused by default, loopback only when allowed, and names are checked after DNS resolution
(by our resolver) so a name pointing at a refused address is refused before connecting.
The same check sees every token realm, redirect hop and pagination link, and credentials
never go to another host than the one they are for.

oras-py is not used: it is synchronous (requests), lacks the referrers listing, and this
client must run on the server's event loop with per-host limits; a second client beside it
would be worse than one here. Caching lives in :mod:`extender.artifacts`, not here.

Modules: :mod:`.reference` (references, descriptors, platforms, choosing the newest),
:mod:`.hosts` (host policy, mirrors, per-host settings), :mod:`.auth` (docker config,
credentials, helpers), :mod:`.client` (the HTTP client) and :mod:`.errors`.
"""
