"""Builders for complete API objects, shaped like what a 1.33 cluster returns.

"Complete" matters: the v37 `kubernetes` client validates responses with pydantic, so e.g. a Node
without every required status.nodeInfo field fails to deserialise. Defaults mirror what the apiserver's
defaulting and the controllers/kubelet leave on real objects (k8s.io/api core/v1, apps/v1, batch/v1
types.go and the defaults in pkg/apis/*/v1/defaults.go), so a test sees what production code sees.
"""

from __future__ import annotations

import base64
import uuid
import zlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]

IPV6_SYSCTLS = ("net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6")


def timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_timestamp() -> str:
    """metav1.MicroTime, as used by Lease and events.k8s.io Event times."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _metadata(name: str, namespace: str | None, labels: Mapping[str, str] | None,
              annotations: Mapping[str, str] | None = None, **extra: Any) -> Obj:
    md: Obj = {"name": name}
    if namespace is not None:
        md["namespace"] = namespace
    md.update(uid=str(uuid.uuid4()), creationTimestamp=timestamp())
    if labels:
        md["labels"] = dict(labels)
    if annotations:
        md["annotations"] = dict(annotations)
    md.update({k: v for k, v in extra.items() if v is not None})
    return md


def node_ip(name: str) -> str:
    """A stable InternalIP per node name."""
    return f"10.0.0.{zlib.crc32(name.encode()) % 250 + 2}"


def owner_reference(owner: Obj, *, controller: bool = True) -> Obj:
    """metadata.ownerReferences entry as controllers write it (blockOwnerDeletion with controller)."""
    ref = {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
           "uid": owner["metadata"]["uid"]}
    if controller:
        ref.update(controller=True, blockOwnerDeletion=True)
    return ref


# ---------------------------------------------------------------------------------------------- nodes


def _condition(kind: str, status: str, reason: str, message: str) -> Obj:
    ts = timestamp()
    return {"type": kind, "status": status, "lastHeartbeatTime": ts, "lastTransitionTime": ts,
            "reason": reason, "message": message}


def _node_conditions(ready: bool | None) -> list[Obj]:
    if ready is None:  # node lifecycle controller after the kubelet stopped posting status
        lost = "Kubelet stopped posting node status."
        return [_condition(t, "Unknown", "NodeStatusUnknown", lost)
                for t in ("MemoryPressure", "DiskPressure", "PIDPressure", "Ready")]
    return [
        _condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        _condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        _condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        _condition("Ready", "True", "KubeletReady", "kubelet is posting ready status")
        if ready else
        _condition("Ready", "False", "KubeletNotReady",
                   "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady"),
    ]


def _controller_taints(unschedulable: bool, ready: bool | None) -> list[Obj]:
    """Taints the node lifecycle controller adds (well-known taints page)."""
    taints = []
    if unschedulable:
        taints.append({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule", "timeAdded": timestamp()})
    if ready is not True:
        key = "node.kubernetes.io/not-ready" if ready is False else "node.kubernetes.io/unreachable"
        taints += [{"key": key, "effect": "NoSchedule", "timeAdded": timestamp()},
                   {"key": key, "effect": "NoExecute", "timeAdded": timestamp()}]
    return taints


def node(name: str, *, labels: Mapping[str, str] | None = None, taints: Sequence[Obj] = (),
         unschedulable: bool = False, ready: bool | None = True, kubelet_version: str = "v1.33.1",
         internal_ip: str | None = None, os: str = "linux", arch: str = "amd64",
         annotations: Mapping[str, str] | None = None) -> Obj:
    """A Node as a kubeadm/containerd cluster shows it. ready=None means status Unknown (node lost)."""
    ip = internal_ip or node_ip(name)
    all_labels = {"beta.kubernetes.io/arch": arch, "beta.kubernetes.io/os": os, "kubernetes.io/arch": arch,
                  "kubernetes.io/hostname": name, "kubernetes.io/os": os, **(labels or {})}
    all_annotations = {"node.alpha.kubernetes.io/ttl": "0",
                       "volumes.kubernetes.io/controller-managed-attach-detach": "true", **(annotations or {})}
    spec: Obj = {"podCIDR": f"10.244.{zlib.crc32(name.encode()) % 250}.0/24"}
    spec["podCIDRs"] = [spec["podCIDR"]]
    all_taints = [*taints, *_controller_taints(unschedulable, ready)]
    if all_taints:
        spec["taints"] = all_taints
    if unschedulable:
        spec["unschedulable"] = True
    minor = int(kubelet_version.lstrip("v").split(".")[1])
    resources = {"cpu": "4", "ephemeral-storage": "102625208Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0",
                 "memory": "16375620Ki", "pods": "110"}
    status = {
        "capacity": resources,
        "allocatable": {**resources, "ephemeral-storage": "94580335255", "memory": "16273220Ki"},
        "conditions": _node_conditions(ready),
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": uuid.uuid5(uuid.NAMESPACE_DNS, name).hex,
            "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
            "bootID": str(uuid.uuid4()),
            "kernelVersion": "6.8.0-60-generic",
            "osImage": "Ubuntu 24.04.2 LTS",
            "containerRuntimeVersion": "containerd://1.7.27",
            "kubeletVersion": kubelet_version,
            # deprecated: the kubelet leaves it empty since 1.31 (DisableNodeKubeProxyVersion)
            "kubeProxyVersion": "" if minor >= 31 else kubelet_version,
            "operatingSystem": os,
            "architecture": arch,
        },
    }
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": _metadata(name, None, all_labels, all_annotations), "spec": spec, "status": status}


def kubelet_config(allowed_unsafe_sysctls: Sequence[str] = (), **overrides: Any) -> Obj:
    """The body of GET /api/v1/nodes/NODE/proxy/configz: {"kubeletconfig": <v1beta1 KubeletConfiguration>}.

    component-base configz marshals the registered object; the kubelet stores the versioned config
    converted without TypeMeta, so there is no kind/apiVersion. allowedUnsafeSysctls is `omitempty`:
    it is absent, not [], when no unsafe sysctl is allowed.
    """
    config: Obj = {
        "enableServer": True,
        "staticPodPath": "/etc/kubernetes/manifests",
        "podLogsDir": "/var/log/pods",
        "syncFrequency": "1m0s",
        "fileCheckFrequency": "20s",
        "httpCheckFrequency": "20s",
        "address": "0.0.0.0",
        "port": 10250,
        "rotateCertificates": True,
        "authentication": {"x509": {"clientCAFile": "/etc/kubernetes/pki/ca.crt"},
                           "webhook": {"enabled": True, "cacheTTL": "2m0s"}, "anonymous": {"enabled": False}},
        "authorization": {"mode": "Webhook",
                          "webhook": {"cacheAuthorizedTTL": "5m0s", "cacheUnauthorizedTTL": "30s"}},
        "registryPullQPS": 5,
        "registryBurst": 10,
        "eventRecordQPS": 50,
        "eventBurst": 100,
        "enableDebuggingHandlers": True,
        "healthzPort": 10248,
        "healthzBindAddress": "127.0.0.1",
        "oomScoreAdj": -999,
        "clusterDomain": "cluster.local",
        "clusterDNS": ["10.96.0.10"],
        "streamingConnectionIdleTimeout": "4h0m0s",
        "nodeStatusUpdateFrequency": "10s",
        "nodeStatusReportFrequency": "5m0s",
        "nodeLeaseDurationSeconds": 40,
        "cgroupsPerQOS": True,
        "cgroupDriver": "systemd",
        "cpuManagerPolicy": "none",
        "memoryManagerPolicy": "None",
        "topologyManagerPolicy": "none",
        "topologyManagerScope": "container",
        "runtimeRequestTimeout": "2m0s",
        "hairpinMode": "promiscuous-bridge",
        "maxPods": 110,
        "podPidsLimit": -1,
        "resolvConf": "/run/systemd/resolve/resolv.conf",
        "cpuCFSQuota": True,
        "cpuCFSQuotaPeriod": "100ms",
        "maxOpenFiles": 1000000,
        "contentType": "application/vnd.kubernetes.protobuf",
        "kubeAPIQPS": 50,
        "kubeAPIBurst": 100,
        "serializeImagePulls": True,
        "evictionHard": {"imagefs.available": "15%", "memory.available": "100Mi", "nodefs.available": "10%",
                         "nodefs.inodesFree": "5%"},
        "evictionPressureTransitionPeriod": "5m0s",
        "failSwapOn": True,
        "containerLogMaxSize": "10Mi",
        "containerLogMaxFiles": 5,
        "enforceNodeAllocatable": ["pods"],
        "volumePluginDir": "/usr/libexec/kubernetes/kubelet-plugins/volume/exec/",
        "logging": {"format": "text", "flushFrequency": "5s", "verbosity": 0,
                    "options": {"text": {"infoBufferSize": "0"}, "json": {"infoBufferSize": "0"}}},
        "shutdownGracePeriod": "0s",
        "shutdownGracePeriodCriticalPods": "0s",
        "registerNode": True,
        "containerRuntimeEndpoint": "unix:///var/run/containerd/containerd.sock",
    }
    if allowed_unsafe_sysctls:
        config["allowedUnsafeSysctls"] = list(allowed_unsafe_sysctls)
    config.update(overrides)
    return {"kubeletconfig": config}


# ------------------------------------------------------------------------------------- namespaces etc.


def namespace(name: str, *, labels: Mapping[str, str] | None = None,
              annotations: Mapping[str, str] | None = None) -> Obj:
    all_labels = {"kubernetes.io/metadata.name": name, **(labels or {})}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _metadata(name, None, all_labels, annotations),
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def configmap(name: str, namespace: str = "default", data: Mapping[str, str] | None = None, *,
              labels: Mapping[str, str] | None = None) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _metadata(name, namespace, labels),
            "data": dict(data or {})}


def secret(name: str, namespace: str = "default", data: Mapping[str, bytes] | None = None, *,
           type: str = "Opaque", labels: Mapping[str, str] | None = None) -> Obj:
    encoded = {k: base64.b64encode(v).decode() for k, v in (data or {}).items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _metadata(name, namespace, labels),
            "type": type, "data": encoded}


def service(name: str, namespace: str = "default", *, selector: Mapping[str, str] | None = None,
            port: int = 443, target_port: int | str = 8443, cluster_ip: str = "10.96.100.10",
            labels: Mapping[str, str] | None = None) -> Obj:
    return {"apiVersion": "v1", "kind": "Service", "metadata": _metadata(name, namespace, labels),
            "spec": {"ports": [{"name": "https", "protocol": "TCP", "port": port, "targetPort": target_port}],
                     "selector": dict(selector or {"app": name}), "clusterIP": cluster_ip,
                     "clusterIPs": [cluster_ip], "type": "ClusterIP", "sessionAffinity": "None",
                     "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster"},
            "status": {"loadBalancer": {}}}


# ------------------------------------------------------------------------------------------------ pods


def container(name: str = "app", image: str = "registry.example/app:1.0", *,
              env: Mapping[str, str] | None = None, resources: Obj | None = None) -> Obj:
    """A container with the defaults the apiserver fills in (pkg/apis/core/v1/defaults.go)."""
    c: Obj = {"name": name, "image": image, "resources": resources or {},
              "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
              "imagePullPolicy": "Always" if image.endswith(":latest") or ":" not in image else "IfNotPresent"}
    if env:
        c["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return c


def pod_spec(*, containers: Sequence[Obj] | None = None, sysctls: Mapping[str, str] | None = None,
             host_network: bool = False, node_name: str | None = None,
             node_selector: Mapping[str, str] | None = None, tolerations: Sequence[Obj] | None = None,
             affinity: Obj | None = None, os: str | None = None, restart_policy: str = "Always",
             default_tolerations: bool = True) -> Obj:
    """A PodSpec after defaulting. `default_tolerations` adds the not-ready/unreachable tolerations the
    DefaultTolerationSeconds admission plugin adds to created pods (not to templates)."""
    spec: Obj = {
        "containers": list(containers or [container()]),
        "restartPolicy": restart_policy,
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirstWithHostNet" if host_network else "ClusterFirst",
        "serviceAccountName": "default",
        "securityContext": {},
        "schedulerName": "default-scheduler",
        "enableServiceLinks": True,
        "preemptionPolicy": "PreemptLowerPriority",
        "priority": 0,
    }
    if sysctls:
        spec["securityContext"]["sysctls"] = [{"name": k, "value": v} for k, v in sysctls.items()]
    if host_network:
        spec["hostNetwork"] = True
    if node_name:
        spec["nodeName"] = node_name
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if affinity:
        spec["affinity"] = affinity
    if os:
        spec["os"] = {"name": os}
    all_tolerations = list(tolerations or [])
    if default_tolerations:
        all_tolerations += [{"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
                            for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")]
    if all_tolerations:
        spec["tolerations"] = all_tolerations
    return spec


def _running_status(spec: Obj, node_name: str) -> Obj:
    ts, ip, host = timestamp(), "10.244.1.17", node_ip(node_name)
    return {
        "phase": "Running",
        "conditions": [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": ts}
                       for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                                 "PodScheduled")],
        "hostIP": host, "hostIPs": [{"ip": host}], "podIP": ip, "podIPs": [{"ip": ip}], "startTime": ts,
        "containerStatuses": [
            {"name": c["name"], "state": {"running": {"startedAt": ts}}, "lastState": {}, "ready": True,
             "restartCount": 0, "image": c["image"], "imageID": f"{c['image']}@sha256:{'0' * 64}",
             "containerID": f"containerd://{uuid.uuid4().hex}", "started": True}
            for c in spec["containers"]
        ],
        "qosClass": "BestEffort",
    }


def pod(name: str, namespace: str = "default", *, labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None, node_name: str | None = None, phase: str | None = None,
        containers: Sequence[Obj] | None = None, sysctls: Mapping[str, str] | None = None,
        host_network: bool = False, owner: Obj | None = None, node_selector: Mapping[str, str] | None = None,
        tolerations: Sequence[Obj] | None = None, affinity: Obj | None = None, os: str | None = None) -> Obj:
    """A Pod. With node_name it is Running on that node (unless `phase` says otherwise), else Pending."""
    spec = pod_spec(containers=containers, sysctls=sysctls, host_network=host_network, node_name=node_name,
                    node_selector=node_selector, tolerations=tolerations, affinity=affinity, os=os)
    phase = phase or ("Running" if node_name else "Pending")
    if phase == "Running" and node_name:
        status = _running_status(spec, node_name)
    else:
        status = {"phase": phase, "qosClass": "BestEffort"}
    md = _metadata(name, namespace, labels, annotations)
    if owner is not None:
        md["ownerReferences"] = [owner_reference(owner)]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": spec, "status": status}


def sysctl_forbidden_pod(node_name: str, namespace: str = "default", *, replicaset: Obj | None = None,
                         sysctls: Sequence[str] = IPV6_SYSCTLS, name: str | None = None) -> Obj:
    """A ReplicaSet's pod as the kubelet leaves it after refusing its sysctl.

    kubelet.go rejectPod sets exactly QOSClass, Phase=Failed, Reason and Message "Pod was rejected: " +
    the sysctl admit message (pkg/kubelet/sysctl/allowlist.go: `forbidden sysctl: "<name>" not allowlisted`,
    naming the first refused sysctl); the status manager adds startTime and keeps the scheduler's
    PodScheduled condition.
    """
    rs = replicaset or replicaset_for("app", namespace)
    template_hash = rs["metadata"]["labels"]["pod-template-hash"]
    pod_name = name or f"{rs['metadata']['name']}-{uuid.uuid4().hex[:5]}"
    labels = {**rs["spec"]["template"]["metadata"]["labels"], "pod-template-hash": template_hash}
    obj = pod(pod_name, namespace, labels=labels, node_name=node_name, phase="Failed", owner=rs,
              sysctls={s: "1" for s in sysctls})
    obj["metadata"]["generateName"] = f"{rs['metadata']['name']}-"
    ts = timestamp()
    obj["status"] = {
        "phase": "Failed",
        "conditions": [{"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": ts}],
        "message": f'Pod was rejected: forbidden sysctl: "{sysctls[0]}" not allowlisted',
        "reason": "SysctlForbidden",
        "startTime": ts,
        "qosClass": "BestEffort",
    }
    return obj


def event(involved: Obj, reason: str, message: str, *, type: str = "Normal", component: str = "kubelet",
          host: str | None = None) -> Obj:
    """A core/v1 Event as client-go's legacy EventRecorder writes it (eventTime stays null)."""
    md = involved["metadata"]
    ts = timestamp()
    source = {"component": component, **({"host": host} if host else {})}
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": _metadata(f"{md['name']}.{uuid.uuid4().hex[:16]}", md.get("namespace", "default"), None),
        "involvedObject": {"kind": involved["kind"], "namespace": md.get("namespace"), "name": md["name"],
                           "uid": md["uid"], "apiVersion": involved["apiVersion"]},
        "reason": reason, "message": message, "source": source, "firstTimestamp": ts, "lastTimestamp": ts,
        "count": 1, "type": type, "eventTime": None, "reportingComponent": component,
        "reportingInstance": host or "",
    }


def sysctl_forbidden_event(rejected_pod: Obj) -> Obj:
    """The Warning the kubelet records in rejectPod (the admit message without the "Pod was rejected: ")."""
    message = rejected_pod["status"]["message"].removeprefix("Pod was rejected: ")
    return event(rejected_pod, "SysctlForbidden", message, type="Warning",
                 host=rejected_pod["spec"].get("nodeName"))


# ------------------------------------------------------------------------------------------- workloads


def _template(pod_labels: Mapping[str, str], annotations: Mapping[str, str] | None, spec: Obj) -> Obj:
    md: Obj = {"labels": dict(pod_labels)}
    if annotations:
        md["annotations"] = dict(annotations)
    return {"metadata": md, "spec": spec}


def _workload_spec(name: str, kw: Mapping[str, Any]) -> tuple[dict[str, str], Obj]:
    pod_labels = dict(kw.get("pod_labels") or {"app": name})
    spec = pod_spec(containers=kw.get("containers"), sysctls=kw.get("sysctls"),
                    host_network=kw.get("host_network", False), node_selector=kw.get("node_selector"),
                    tolerations=kw.get("tolerations"), affinity=kw.get("affinity"),
                    restart_policy=kw.get("restart_policy", "Always"), default_tolerations=False)
    return pod_labels, _template(pod_labels, kw.get("pod_annotations"), spec)


def deployment(name: str, namespace: str = "default", *, replicas: int = 1,
               labels: Mapping[str, str] | None = None, annotations: Mapping[str, str] | None = None,
               **pod_options: Any) -> Obj:
    """A Deployment that has rolled out. Pod template options: pod_labels, pod_annotations, containers,
    sysctls, host_network, node_selector, tolerations, affinity."""
    pod_labels, template = _workload_spec(name, pod_options)
    ts = timestamp()
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _metadata(name, namespace, labels, {"deployment.kubernetes.io/revision": "1",
                                                        **(annotations or {})}, generation=1),
        "spec": {"replicas": replicas, "selector": {"matchLabels": pod_labels}, "template": template,
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                 "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600},
        "status": {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                   "readyReplicas": replicas, "availableReplicas": replicas,
                   "conditions": [
                       {"type": "Available", "status": "True", "lastUpdateTime": ts, "lastTransitionTime": ts,
                        "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."},
                       {"type": "Progressing", "status": "True", "lastUpdateTime": ts, "lastTransitionTime": ts,
                        "reason": "NewReplicaSetAvailable",
                        "message": f'ReplicaSet "{name}-5d8f9c7b6d" has successfully progressed.'},
                   ]},
    }


def replicaset(name: str, namespace: str = "default", *, replicas: int = 1, owner: Obj | None = None,
               labels: Mapping[str, str] | None = None, template_hash: str = "5d8f9c7b6d", **pod_options: Any) -> Obj:
    pod_labels, template = _workload_spec(name, pod_options)
    pod_labels = {**pod_labels, "pod-template-hash": template_hash}
    template["metadata"]["labels"] = pod_labels
    md = _metadata(name, namespace, {**pod_labels, **(labels or {})},
                   {"deployment.kubernetes.io/desired-replicas": str(replicas),
                    "deployment.kubernetes.io/max-replicas": str(replicas + 1),
                    "deployment.kubernetes.io/revision": "1"}, generation=1)
    if owner is not None:
        md["ownerReferences"] = [owner_reference(owner)]
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": md,
            "spec": {"replicas": replicas, "selector": {"matchLabels": pod_labels}, "template": template},
            "status": {"replicas": replicas, "fullyLabeledReplicas": replicas, "readyReplicas": replicas,
                       "availableReplicas": replicas, "observedGeneration": 1}}


def replicaset_for(deployment_name: str, namespace: str = "default", *, template_hash: str = "5d8f9c7b6d",
                   **pod_options: Any) -> Obj:
    """The ReplicaSet a Deployment controller makes: name DEPLOY-HASH, owned by the Deployment."""
    owner = deployment(deployment_name, namespace, **pod_options)
    return replicaset(f"{deployment_name}-{template_hash}", namespace, owner=owner, template_hash=template_hash,
                      pod_labels=owner["spec"]["template"]["metadata"]["labels"], **pod_options)


def statefulset(name: str, namespace: str = "default", *, replicas: int = 1,
                labels: Mapping[str, str] | None = None, **pod_options: Any) -> Obj:
    pod_labels, template = _workload_spec(name, pod_options)
    revision = f"{name}-7b9c8d6f5c"
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": _metadata(name, namespace, labels, generation=1),
        "spec": {"replicas": replicas, "selector": {"matchLabels": pod_labels}, "template": template,
                 "serviceName": name, "podManagementPolicy": "OrderedReady",
                 "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                 "revisionHistoryLimit": 10,
                 "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"}},
        "status": {"observedGeneration": 1, "replicas": replicas, "readyReplicas": replicas,
                   "currentReplicas": replicas, "updatedReplicas": replicas, "availableReplicas": replicas,
                   "currentRevision": revision, "updateRevision": revision, "collisionCount": 0},
    }


def daemonset(name: str, namespace: str = "default", *, scheduled: int = 1,
              labels: Mapping[str, str] | None = None, **pod_options: Any) -> Obj:
    pod_labels, template = _workload_spec(name, pod_options)
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": _metadata(name, namespace, labels, {"deprecated.daemonset.template.generation": "1"},
                              generation=1),
        "spec": {"selector": {"matchLabels": pod_labels}, "template": template,
                 "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                 "revisionHistoryLimit": 10},
        "status": {"currentNumberScheduled": scheduled, "desiredNumberScheduled": scheduled,
                   "numberMisscheduled": 0, "numberReady": scheduled, "numberAvailable": scheduled,
                   "updatedNumberScheduled": scheduled, "observedGeneration": 1},
    }


def _job_spec(name: str, uid: str, pod: Mapping[str, Any]) -> Obj:
    _, template = _workload_spec(name, {**pod, "restart_policy": pod.get("restart_policy", "Never")})
    # the Job controller's selector labels (batch/v1 types: batch.kubernetes.io/controller-uid, job-name)
    template["metadata"]["labels"] = {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
                                      "controller-uid": uid, "job-name": name, **template["metadata"]["labels"]}
    return {"parallelism": 1, "completions": 1, "backoffLimit": 6, "completionMode": "NonIndexed",
            "suspend": False, "podReplacementPolicy": "TerminatingOrFailed", "manualSelector": False,
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}, "template": template}


def job(name: str, namespace: str = "default", *, labels: Mapping[str, str] | None = None, **pod_options: Any) -> Obj:
    md = _metadata(name, namespace, labels, generation=1)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": md, "spec": _job_spec(name, md["uid"], pod_options),
            "status": {"active": 1, "ready": 0, "terminating": 0, "startTime": timestamp(),
                       "uncountedTerminatedPods": {}}}


def cronjob(name: str, namespace: str = "default", *, schedule: str = "*/5 * * * *",
            labels: Mapping[str, str] | None = None, **pod_options: Any) -> Obj:
    _, template = _workload_spec(name, {**pod_options, "restart_policy": pod_options.get("restart_policy", "Never")})
    return {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": _metadata(name, namespace, labels, generation=1),
        "spec": {"schedule": schedule, "concurrencyPolicy": "Allow", "suspend": False,
                 "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
                 "jobTemplate": {"metadata": {}, "spec": {"backoffLimit": 6, "template": template}}},
        "status": {},
    }


# ------------------------------------------------------------------------------------ cluster plumbing


def lease(name: str, namespace: str = "default", *, holder: str | None = None, duration_seconds: int = 15,
          renew_time: str | None = None, transitions: int = 0) -> Obj:
    spec: Obj = {"leaseDurationSeconds": duration_seconds, "leaseTransitions": transitions}
    if holder is not None:
        spec.update(holderIdentity=holder, acquireTime=renew_time or micro_timestamp(),
                    renewTime=renew_time or micro_timestamp())
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": _metadata(name, namespace, None),
            "spec": spec}


def mutating_webhook_configuration(name: str, *, webhook_name: str = "inject.v4only.io",
                                   service_name: str = "v4only", service_namespace: str = "v4only",
                                   ca_bundle: str = "", failure_policy: str = "Ignore",
                                   namespace_selector: Obj | None = None, object_selector: Obj | None = None) -> Obj:
    """One webhook on Pod CREATE, with the defaults admissionregistration/v1 fills in, except that
    failurePolicy defaults to Ignore here (the API's default is Fail)."""
    client_config: Obj = {"service": {"namespace": service_namespace, "name": service_name, "path": "/mutate",
                                      "port": 443}}
    if ca_bundle:
        client_config["caBundle"] = ca_bundle
    hook = {
        "name": webhook_name, "clientConfig": client_config,
        "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"],
                   "scope": "*"}],
        "failurePolicy": failure_policy, "matchPolicy": "Equivalent",
        "namespaceSelector": namespace_selector or {}, "objectSelector": object_selector or {},
        "sideEffects": "None", "timeoutSeconds": 10, "admissionReviewVersions": ["v1"],
        "reinvocationPolicy": "Never",
    }
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": _metadata(name, None, None, generation=1), "webhooks": [hook]}
