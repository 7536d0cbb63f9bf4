variable "kubeconfig_path" {
  type        = string
  description = "Path of the kubeconfig used to reach the cluster."
  default     = "~/.kube/config"
}

variable "kube_context" {
  type        = string
  description = "kubeconfig context to use. Empty: the current context."
  default     = ""
}

variable "redis_url" {
  type        = string
  description = "URL of your Redis (redis:// or rediss://, with credentials). It must be durable (AOF or a managed equivalent) with maxmemory-policy noeviction."
  sensitive   = true
}

variable "namespace" {
  type        = string
  description = "Kubernetes namespace for Rivulet (created)."
  default     = "rivulet"
}

variable "image_tag" {
  type        = string
  description = "Rivulet image tag. Empty: the chart's appVersion."
  default     = ""
}

variable "api_keys" {
  type        = list(string)
  description = "API key entries (`key` or `key:scope+scope`). Empty: one is generated (output generated_api_key)."
  default     = []
  sensitive   = true
}

variable "openai_api_key" {
  type        = string
  description = "OpenAI API key. Empty: not set."
  default     = ""
  sensitive   = true
}

variable "anthropic_api_key" {
  type        = string
  description = "Anthropic API key. Empty: not set."
  default     = ""
  sensitive   = true
}

variable "default_provider" {
  type        = string
  description = "Provider for requests that name none: fake, openai, anthropic, or empty (chosen from the keys given)."
  default     = ""
}

variable "ingress_host" {
  type        = string
  description = "Host name for the Ingress. Empty: no Ingress."
  default     = ""
}

variable "install_ingress_nginx" {
  type        = bool
  description = "Install the ingress-nginx controller tuned for SSE (when the cluster has none)."
  default     = false
}
