locals {
  chart_path = var.chart_path != "" ? var.chart_path : "${path.module}/../../../helm/rivulet"
  namespace  = var.create_namespace ? kubernetes_namespace_v1.this[0].metadata[0].name : var.namespace

  labels = merge(var.labels, {
    "app.kubernetes.io/part-of"    = "rivulet"
    "app.kubernetes.io/managed-by" = "terraform"
  })

  # Only the keys actually given: an empty OPENAI_API_KEY would still count as "set" to a
  # process that checks for presence. Which keys are given is not a secret (only their values
  # are), so the filter is nonsensitive and may drive `count`.
  provider_keys_given = compact([
    nonsensitive(var.openai_api_key != "") ? "OPENAI_API_KEY" : "",
    nonsensitive(var.anthropic_api_key != "") ? "ANTHROPIC_API_KEY" : "",
  ])
  provider_keys = {
    for name, value in {
      OPENAI_API_KEY    = var.openai_api_key
      ANTHROPIC_API_KEY = var.anthropic_api_key
    } : name => value if contains(local.provider_keys_given, name)
  }
  has_provider_keys = length(local.provider_keys_given) > 0

  generate_api_key = nonsensitive(length(var.api_keys) == 0)
  api_keys         = local.generate_api_key ? [random_password.api_key[0].result] : var.api_keys

  # The chart's values (helm/rivulet/values.yaml). A test checks every leaf here exists there.
  chart_values = {
    image = {
      repository = var.image_repository
      tag        = var.image_tag
    }
    api = {
      replicas = var.api_replicas
      autoscaling = {
        enabled     = var.api_autoscaling_enabled
        minReplicas = var.api_replicas
        maxReplicas = max(var.api_max_replicas, var.api_replicas)
      }
    }
    worker = {
      enabled  = var.worker_enabled
      replicas = var.worker_replicas
    }
    redis = {
      existingSecret    = kubernetes_secret_v1.redis.metadata[0].name
      existingSecretKey = "redis-url"
    }
    auth = {
      existingSecret = kubernetes_secret_v1.auth.metadata[0].name
    }
    providers = {
      existingSecret = local.has_provider_keys ? kubernetes_secret_v1.providers[0].metadata[0].name : ""
      default        = var.default_provider
    }
    ingress = {
      enabled   = var.ingress_enabled
      className = var.ingress_class_name
      hosts = [
        for host in var.ingress_hosts : {
          host  = host
          paths = [{ path = "/", pathType = "Prefix" }]
        }
      ]
      tls = var.ingress_tls_secret_name == "" ? [] : [
        { secretName = var.ingress_tls_secret_name, hosts = var.ingress_hosts }
      ]
    }
    otel = {
      endpoint = var.otel_endpoint
    }
  }

  # ingress-nginx tuned for Server-Sent Events: no response buffering or gzip (both hold
  # chunks back), long proxy timeouts (an idle stream only sends a heartbeat every 15 s), and
  # old workers given 5 minutes to drain open streams on reload/shutdown. Streams still open
  # after that are cut; clients resume at their offset, so draining need not outlast them.
  ingress_nginx_values = {
    controller = {
      replicaCount                  = var.ingress_nginx_replicas
      terminationGracePeriodSeconds = 330
      ingressClassResource = {
        name            = var.ingress_class_name
        controllerValue = "k8s.io/ingress-nginx"
        default         = false
      }
      ingressClass = var.ingress_class_name
      config = {
        "proxy-buffering"            = "off"
        "proxy-request-buffering"    = "off"
        "proxy-read-timeout"         = tostring(var.stream_timeout_seconds)
        "proxy-send-timeout"         = tostring(var.stream_timeout_seconds)
        "worker-shutdown-timeout"    = "300s"
        "use-gzip"                   = "false"
        "enable-brotli"              = "false"
        "keep-alive"                 = "75"
        "upstream-keepalive-timeout" = "60"
        "allow-snippet-annotations"  = "false"
      }
      admissionWebhooks = {
        enabled = true
      }
    }
  }
}

resource "kubernetes_namespace_v1" "this" {
  count = var.create_namespace ? 1 : 0

  metadata {
    name   = var.namespace
    labels = local.labels
  }
}

resource "kubernetes_secret_v1" "redis" {
  metadata {
    name      = "${var.release_name}-redis"
    namespace = local.namespace
    labels    = local.labels
  }

  data = {
    "redis-url" = var.redis_url
  }

  type = "Opaque"
}

resource "random_password" "api_key" {
  count = local.generate_api_key ? 1 : 0

  # Keys are 16-256 characters of A-Za-z0-9._~- : alphanumerics only keeps them shell-safe.
  length  = 48
  special = false
}

resource "random_password" "read_token_secret" {
  length  = 48
  special = false
}

resource "kubernetes_secret_v1" "auth" {
  metadata {
    name      = "${var.release_name}-auth"
    namespace = local.namespace
    labels    = local.labels
  }

  data = {
    "api-keys"          = join("\n", local.api_keys)
    "read-token-secret" = var.read_token_secret != "" ? var.read_token_secret : random_password.read_token_secret.result
  }

  type = "Opaque"
}

resource "kubernetes_secret_v1" "providers" {
  count = local.has_provider_keys ? 1 : 0

  metadata {
    name      = "${var.release_name}-providers"
    namespace = local.namespace
    labels    = local.labels
  }

  data = local.provider_keys

  type = "Opaque"
}

resource "helm_release" "ingress_nginx" {
  count = var.install_ingress_nginx ? 1 : 0

  name             = "ingress-nginx"
  repository       = "https://kubernetes.github.io/ingress-nginx"
  chart            = "ingress-nginx"
  version          = var.ingress_nginx_chart_version
  namespace        = var.ingress_nginx_namespace
  create_namespace = true
  atomic           = true
  timeout          = var.helm_timeout_seconds
  max_history      = 10

  values = [yamlencode(local.ingress_nginx_values)]
}

resource "helm_release" "rivulet" {
  name        = var.release_name
  chart       = local.chart_path
  namespace   = local.namespace
  atomic      = true
  wait        = true
  timeout     = var.helm_timeout_seconds
  max_history = 10

  # The module's values first, then the caller's extra_values (Helm deep-merges, later wins).
  values = [
    yamlencode(local.chart_values),
    yamlencode(var.extra_values),
  ]

  # The controller's admission webhook validates the chart's Ingress: it must be up first.
  depends_on = [helm_release.ingress_nginx]
}
