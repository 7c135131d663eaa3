# The real node's pod sandbox image (containerd's sandbox_image; no registry serves
# registry.k8s.io/pause here): a process that holds the pod's namespaces and sleeps forever.
ARG BASE_IMAGE=localhost/algoedge-base:bookworm
FROM ${BASE_IMAGE}
USER 65535:65535
ENTRYPOINT ["/bin/sleep", "infinity"]
