#!/usr/bin/env bash
# Roll out an overlay: the namespace, settings, secrets and the migration Job first, wait for the Job to
# succeed, then everything else. A failed migration stops here, before any pod of the new release starts.
# Usage: deploy/kubernetes/rollout.sh [overlay folder] (default: deploy/kubernetes/overlays/production)
set -euo pipefail
overlay="${1:-$(dirname "$0")/overlays/production}"
namespace="${NAMESPACE:-contraband}"
if [ ! -f "$overlay/secrets.env" ]; then
  echo "$overlay/secrets.env is missing: copy secrets.env.example beside it and fill it in" >&2
  exit 1
fi
rendered="$(mktemp)"
trap 'rm -f "$rendered"' EXIT
kubectl kustomize "$overlay" >"$rendered"

# A Job's pod template cannot change: the previous release's Job goes first.
kubectl delete job migrate --namespace "$namespace" --ignore-not-found --wait
kubectl apply -f "$rendered" --selector 'app.kubernetes.io/component in (config,migrate)'

echo "waiting for the migrations (job/migrate)"
while true; do
  state="$(kubectl get job migrate --namespace "$namespace" \
    -o jsonpath='{.status.conditions[?(@.status=="True")].type}')"
  case " $state " in
    *" Complete "*) break ;;
    *" Failed "*)
      kubectl logs job/migrate --namespace "$namespace" --tail 50 >&2 || true
      echo "the migrations failed: nothing else was rolled out" >&2
      exit 1 ;;
  esac
  sleep 5
done

kubectl apply -f "$rendered"
for deployment in gateway worker redrive flower; do
  kubectl rollout status "deployment/$deployment" --namespace "$namespace" --timeout 10m
done
