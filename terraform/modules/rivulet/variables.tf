# ---------------------------------------------------------------------------------------------
# Release and namespace
# ---------------------------------------------------------------------------------------------

variable "release_name" {
  type        = string
  description = "Helm release name of Rivulet; also the prefix of the Secrets this module creates."
  default     = "rivulet"

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$", var.release_name))
    error_message = "The release_name must be a DNS label of at most 40 characters (a-z, 0-9, -)."
  }
}

variable "namespace" {
  type        = string
  description = "Kubernetes namespace Rivulet is installed into."
  default     = "rivulet"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "The namespace must be a DNS label (a-z, 0-9, -; at most 63 characters)."
  }
}

variable "create_namespace" {
  type        = bool
  description = "Create the namespace. False: it must already exist."
  default     = true
}

variable "labels" {
  type        = map(string)
  description = "Labels added to the namespace and to the Secrets this module creates."
  default     = {}
}

variable "chart_path" {
  type        = string
  description = "Path (or URL) of the Rivulet Helm chart. Empty: the chart in this repository (helm/rivulet)."
  default     = ""
}

variable "helm_timeout_seconds" {
  type        = number
  description = "Seconds Helm waits for the release's pods to become ready before the apply fails (and rolls back)."
  default     = 600

  validation {
    condition     = var.helm_timeout_seconds >= 60
    error_message = "The helm_timeout_seconds must be at least 60."
  }
}

# ---------------------------------------------------------------------------------------------
# Image and workload shape
# ---------------------------------------------------------------------------------------------

variable "image_repository" {
  type        = string
  description = "Container image repository of Rivulet (the root Dockerfile builds it)."
  default     = "ghcr.io/rivulet-dev/rivulet"
}

variable "image_tag" {
  type        = string
  description = "Container image tag. Empty: the chart's appVersion."
  default     = ""
}

variable "api_replicas" {
  type        = number
  description = "API pods (`rivulet serve`); the HPA's minimum when api_autoscaling_enabled is true."
  default     = 2

  validation {
    condition     = var.api_replicas >= 1 && floor(var.api_replicas) == var.api_replicas
    error_message = "The api_replicas must be a whole number >= 1."
  }
}

variable "api_autoscaling_enabled" {
  type        = bool
  description = "Scale API pods on CPU with a HorizontalPodAutoscaler (needs metrics-server)."
  default     = true
}

variable "api_max_replicas" {
  type        = number
  description = "Most API pods the HPA may run (used when api_autoscaling_enabled is true); must be >= api_replicas."
  default     = 10

  validation {
    condition     = var.api_max_replicas >= 1 && floor(var.api_max_replicas) == var.api_max_replicas
    error_message = "The api_max_replicas must be a whole number >= 1."
  }
}

variable "worker_enabled" {
  type        = bool
  description = "Run generations in a separate `rivulet worker` Deployment. False: API pods run them in-process."
  default     = true
}

variable "worker_replicas" {
  type        = number
  description = "Worker pods when worker_enabled is true."
  default     = 2

  validation {
    condition     = var.worker_replicas >= 1 && floor(var.worker_replicas) == var.worker_replicas
    error_message = "The worker_replicas must be a whole number >= 1."
  }
}

# ---------------------------------------------------------------------------------------------
# Redis, auth and providers (stored in Secrets; the chart only gets the Secret names)
# ---------------------------------------------------------------------------------------------

variable "redis_url" {
  type        = string
  description = "URL of the Redis that holds the durable log (redis:// or rediss://, credentials included). Its maxmemory-policy must be noeviction. Stored in a Secret under the key `redis-url`."
  sensitive   = true

  validation {
    condition     = can(regex("^rediss?://[^[:space:]]+$", var.redis_url))
    error_message = "The redis_url must start with redis:// or rediss:// and contain no whitespace."
  }
}

variable "api_keys" {
  type        = list(string)
  description = "API key entries, `key` (all scopes) or `key:scope+scope` (generate, streams:write, read, admin); keys are 16-256 of A-Za-z0-9._~-. Empty: one random all-scope key is generated (output `generated_api_key`)."
  default     = []
  sensitive   = true

  validation {
    condition = alltrue([
      for entry in var.api_keys : can(regex("^[A-Za-z0-9._~-]{16,256}(:[a-z:]+(\\+[a-z:]+)*)?$", entry))
    ])
    error_message = "Each api_keys entry must be `key` or `key:scope+scope`, the key 16-256 characters of A-Za-z0-9._~-."
  }
}

variable "read_token_secret" {
  type        = string
  description = "HMAC secret (32+ characters) signing browser read tokens; the same on every pod. Empty: a random 48-character secret is generated and kept in state."
  default     = ""
  sensitive   = true

  validation {
    condition     = var.read_token_secret == "" || length(var.read_token_secret) >= 32
    error_message = "The read_token_secret must be empty (generated) or at least 32 characters."
  }
}

variable "openai_api_key" {
  type        = string
  description = "OpenAI API key (stored as OPENAI_API_KEY in the providers Secret). Empty: not set."
  default     = ""
  sensitive   = true
}

variable "anthropic_api_key" {
  type        = string
  description = "Anthropic API key (stored as ANTHROPIC_API_KEY in the providers Secret). Empty: not set."
  default     = ""
  sensitive   = true
}

variable "default_provider" {
  type        = string
  description = "Provider for generations that name none: fake, openai, anthropic, or empty (openai if its key is set, else anthropic, else fake)."
  default     = ""

  validation {
    condition     = contains(["", "fake", "openai", "anthropic"], var.default_provider)
    error_message = "The default_provider must be one of \"\", \"fake\", \"openai\", \"anthropic\"."
  }
}

variable "otel_endpoint" {
  type        = string
  description = "OTLP/HTTP collector base URL (e.g. http://otel-collector.observability:4318). Empty: tracing off."
  default     = ""

  validation {
    condition     = var.otel_endpoint == "" || can(regex("^https?://", var.otel_endpoint))
    error_message = "The otel_endpoint must be empty or an http:// or https:// URL."
  }
}

# ---------------------------------------------------------------------------------------------
# Ingress
# ---------------------------------------------------------------------------------------------

variable "ingress_enabled" {
  type        = bool
  description = "Expose the API through an Ingress (the chart adds the ingress-nginx streaming annotations)."
  default     = false
}

variable "ingress_class_name" {
  type        = string
  description = "IngressClass of the Ingress, and of the ingress-nginx controller when install_ingress_nginx is true."
  default     = "nginx"
}

variable "ingress_hosts" {
  type        = list(string)
  description = "Host names routed to the API (path / , Prefix). Required when ingress_enabled is true."
  default     = []
}

variable "ingress_tls_secret_name" {
  type        = string
  description = "Name of a kubernetes.io/tls Secret (e.g. made by cert-manager) for ingress_hosts. Empty: no TLS on the Ingress."
  default     = ""
}

variable "install_ingress_nginx" {
  type        = bool
  description = "Also install the ingress-nginx controller (Helm chart) configured for long-lived SSE streams."
  default     = false
}

variable "ingress_nginx_chart_version" {
  type        = string
  description = "Pinned version of the ingress-nginx Helm chart (https://kubernetes.github.io/ingress-nginx)."
  default     = "4.12.1"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.ingress_nginx_chart_version))
    error_message = "The ingress_nginx_chart_version must be an exact version (x.y.z), not a range."
  }
}

variable "ingress_nginx_namespace" {
  type        = string
  description = "Namespace the ingress-nginx controller is installed into (created by Helm)."
  default     = "ingress-nginx"
}

variable "ingress_nginx_replicas" {
  type        = number
  description = "ingress-nginx controller pods."
  default     = 2

  validation {
    condition     = var.ingress_nginx_replicas >= 1 && floor(var.ingress_nginx_replicas) == var.ingress_nginx_replicas
    error_message = "The ingress_nginx_replicas must be a whole number >= 1."
  }
}

variable "stream_timeout_seconds" {
  type        = number
  description = "Seconds ingress-nginx keeps an idle proxied connection open (proxy-read-timeout, proxy-send-timeout). Must exceed the SSE heartbeat (15 s)."
  default     = 3600

  validation {
    condition     = var.stream_timeout_seconds >= 60
    error_message = "The stream_timeout_seconds must be at least 60 (the SSE heartbeat is 15 s)."
  }
}

# ---------------------------------------------------------------------------------------------
# Escape hatch
# ---------------------------------------------------------------------------------------------

variable "extra_values" {
  type        = any
  description = "More chart values (an object mirroring helm/rivulet/values.yaml), passed as a second values document: Helm deep-merges it over what this module sets."
  default     = {}
}
