output "namespace" {
  description = "Namespace Rivulet runs in."
  value       = module.rivulet.namespace
}

output "redis_endpoint" {
  description = "Host name of the managed Redis (reachable from inside the VPC only)."
  value       = module.redis.endpoint
}

output "redis_engine_kind" {
  description = "memorydb or elasticache."
  value       = module.redis.engine_kind
}

output "url" {
  description = "Where the API answers: the Ingress host, or how to reach the Service without one."
  value       = var.ingress_host != "" ? "${var.ingress_tls_secret_name != "" ? "https" : "http"}://${var.ingress_host}/" : "kubectl -n ${module.rivulet.namespace} port-forward svc/${module.rivulet.release_name} 8080:80"
}

output "generated_api_key" {
  description = "The API key generated when api_keys was empty: `terraform output -raw generated_api_key`."
  value       = module.rivulet.generated_api_key
  sensitive   = true
}
