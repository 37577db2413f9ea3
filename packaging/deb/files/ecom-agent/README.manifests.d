/etc/ecom-agent/manifests.d: overriding the seeded manifests
============================================================

The agent that holds the Lease kube-system/ecom-agent-seeder applies the
platform's manifests, which are embedded in the ecom-agent binary, with
server-side apply. This directory changes that set, on every control-plane
node (keep it the same on all of them):

  NAME.yaml        replaces the embedded manifest of the same name, or adds
                   a new one to the set;
  NAME.yaml.skip   disables the embedded manifest NAME.yaml (the file's
                   contents do not matter).

The set is rescanned every 30 seconds and re-applied when it changed.
Objects that leave the set are pruned only if they carry the label
app.kubernetes.io/managed-by: ecom-agent and the annotation
ecom-agent.io/manifest; namespaces and CRDs never are.

`ecom-agent status` shows the result of every object. The package ships
this directory empty and never touches what you put in it.
