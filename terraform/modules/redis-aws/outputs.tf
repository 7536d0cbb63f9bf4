output "redis_url" {
  description = "rediss:// URL with credentials, ready for the rivulet module's redis_url."
  value       = "rediss://${local.url_user}:${random_password.auth.result}@${local.endpoint}:${local.port}"
  sensitive   = true
}

output "endpoint" {
  description = "Host name Rivulet connects to: the MemoryDB cluster endpoint or the ElastiCache primary endpoint."
  value       = local.endpoint
}

output "port" {
  description = "TCP port of the endpoint (TLS)."
  value       = local.port
}

output "engine_kind" {
  description = "The managed service in use: memorydb or elasticache."
  value       = var.engine_kind
}

output "password" {
  description = "Password of the MemoryDB user / the ElastiCache AUTH token."
  value       = random_password.auth.result
  sensitive   = true
}

output "security_group_id" {
  description = "Security group on the Redis nodes; add ingress rules to it to admit more clients."
  value       = aws_security_group.this.id
}

output "kms_key_arn" {
  description = "KMS key encrypting the data at rest (the given one, or the one the module created)."
  value       = local.kms_key_arn
}

output "arn" {
  description = "ARN of the MemoryDB cluster or the ElastiCache replication group."
  value       = local.memorydb ? one(aws_memorydb_cluster.this[*].arn) : one(aws_elasticache_replication_group.this[*].arn)
}
