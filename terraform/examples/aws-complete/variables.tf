variable "region" {
  type        = string
  description = "AWS region of the EKS cluster and the Redis."
}

variable "eks_cluster_name" {
  type        = string
  description = "Name of the existing EKS cluster Rivulet is installed into (your AWS credentials must be able to reach its API)."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets for Redis, in at least two Availability Zones. Empty: the EKS cluster's own subnets."
  default     = []
}

variable "redis_engine_kind" {
  type        = string
  description = "memorydb (durable transaction log; the default) or elasticache (replicas + snapshots). See modules/redis-aws/README.md."
  default     = "memorydb"
}

variable "name" {
  type        = string
  description = "Name of the Redis deployment and the Helm release."
  default     = "rivulet"
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

variable "ingress_host" {
  type        = string
  description = "Host name for the Ingress. Empty: no Ingress (reach the Service inside the cluster)."
  default     = ""
}

variable "ingress_tls_secret_name" {
  type        = string
  description = "kubernetes.io/tls Secret for ingress_host (e.g. from cert-manager). Empty: plain HTTP at the ingress."
  default     = ""
}

variable "install_ingress_nginx" {
  type        = bool
  description = "Install the ingress-nginx controller tuned for SSE (when the cluster has none)."
  default     = false
}

variable "tags" {
  type        = map(string)
  description = "Tags for every AWS resource."
  default     = {}
}
