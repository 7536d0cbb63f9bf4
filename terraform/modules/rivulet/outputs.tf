output "namespace" {
  description = "Namespace Rivulet runs in."
  value       = local.namespace
}

output "release_name" {
  description = "Helm release name of Rivulet."
  value       = helm_release.rivulet.name
}

output "release_status" {
  description = "Status of the Rivulet Helm release (deployed, failed, ...)."
  value       = helm_release.rivulet.status
}

output "chart_version" {
  description = "Version of the Rivulet chart that was installed."
  value       = helm_release.rivulet.metadata[0].version
}

output "redis_secret_name" {
  description = "Secret holding the Redis URL under the key `redis-url`."
  value       = kubernetes_secret_v1.redis.metadata[0].name
}

output "auth_secret_name" {
  description = "Secret holding `api-keys` (one entry per line) and `read-token-secret`; rotate keys by changing api_keys and applying."
  value       = kubernetes_secret_v1.auth.metadata[0].name
}

output "providers_secret_name" {
  description = "Secret holding OPENAI_API_KEY / ANTHROPIC_API_KEY, or null when no provider key was given."
  value       = local.has_provider_keys ? kubernetes_secret_v1.providers[0].metadata[0].name : null
}

output "generated_api_key" {
  description = "The all-scope API key generated when api_keys was empty (null otherwise). Read it with `terraform output -raw generated_api_key`."
  value       = local.generate_api_key ? random_password.api_key[0].result : null
  sensitive   = true
}

output "ingress_nginx_namespace" {
  description = "Namespace of the ingress-nginx controller this module installed, or null when install_ingress_nginx is false."
  value       = var.install_ingress_nginx ? helm_release.ingress_nginx[0].namespace : null
}
