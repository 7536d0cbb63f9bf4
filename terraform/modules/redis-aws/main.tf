# Managed Redis for Rivulet's durable log: MemoryDB (default) or an ElastiCache replication
# group, always with TLS, encryption at rest under a KMS key, a password, maxmemory-policy
# noeviction, daily snapshots, and a security group open on 6379 to the given sources only.
# README.md says what durability each option gives and what it does not.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  memorydb    = var.engine_kind == "memorydb"
  elasticache = var.engine_kind == "elasticache"
  port        = 6379

  engine_major = split(".", var.engine_version)[0]
  family = var.parameter_group_family != "" ? var.parameter_group_family : (
    local.memorydb ? "memorydb_${var.engine}${local.engine_major}" : "${var.engine}${local.engine_major}"
  )
  node_type = var.node_type != "" ? var.node_type : (local.memorydb ? "db.r7g.large" : "cache.r7g.large")

  kms_key_arn = var.kms_key_arn != "" ? var.kms_key_arn : aws_kms_key.this[0].arn

  endpoint = local.memorydb ? one(aws_memorydb_cluster.this[*].cluster_endpoint[0].address) : one(aws_elasticache_replication_group.this[*].primary_endpoint_address)
  # MemoryDB authenticates an ACL user; ElastiCache's AUTH token goes with an empty user name
  # (redis-py then sends `AUTH <token>`).
  url_user = local.memorydb ? var.user_name : ""

  tags = merge(var.tags, { "app.kubernetes.io/part-of" = "rivulet" })
}

# ---------------------------------------------------------------------------------------------
# Secrets: the password is alphanumeric so it needs no escaping inside the URL and meets both
# services' rules (16-128 printable characters, no @ / " or spaces).
# ---------------------------------------------------------------------------------------------

resource "random_password" "auth" {
  length  = 64
  special = false
}

# ---------------------------------------------------------------------------------------------
# Encryption at rest: a customer managed key unless one is given.
# ---------------------------------------------------------------------------------------------

resource "aws_kms_key" "this" {
  count = var.kms_key_arn == "" ? 1 : 0

  description             = "Encryption at rest of ${var.name} (Rivulet ${var.engine_kind})"
  enable_key_rotation     = true
  deletion_window_in_days = 30

  # The default key policy, written out: the account administers the key through IAM, and
  # MemoryDB/ElastiCache use it through grants made with the caller's IAM permissions.
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "EnableIAMUserPermissions"
        Effect    = "Allow"
        Principal = { AWS = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
    ]
  })

  tags = local.tags
}

resource "aws_kms_alias" "this" {
  count = var.kms_key_arn == "" ? 1 : 0

  name          = "alias/${var.name}-redis"
  target_key_id = aws_kms_key.this[0].key_id
}

# ---------------------------------------------------------------------------------------------
# Network: port 6379 from the given security groups / CIDRs only; no egress.
# ---------------------------------------------------------------------------------------------

resource "aws_security_group" "this" {
  name_prefix = "${var.name}-redis-"
  description = "Rivulet Redis (${var.engine_kind}): TLS on 6379 from allowed sources only"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-redis" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "from_security_group" {
  for_each = toset(var.allowed_security_group_ids)

  security_group_id            = aws_security_group.this.id
  description                  = "Redis TLS from ${each.value}"
  ip_protocol                  = "tcp"
  from_port                    = local.port
  to_port                      = local.port
  referenced_security_group_id = each.value
  tags                         = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "from_cidr" {
  for_each = toset(var.allowed_cidr_blocks)

  security_group_id = aws_security_group.this.id
  description       = "Redis TLS from ${each.value}"
  ip_protocol       = "tcp"
  from_port         = local.port
  to_port           = local.port
  cidr_ipv4         = each.value
  tags              = local.tags
}

# ---------------------------------------------------------------------------------------------
# MemoryDB
# ---------------------------------------------------------------------------------------------

resource "aws_memorydb_subnet_group" "this" {
  count = local.memorydb ? 1 : 0

  name        = "${var.name}-redis"
  description = "Rivulet durable log"
  subnet_ids  = var.subnet_ids
  tags        = local.tags
}

resource "aws_memorydb_parameter_group" "this" {
  count = local.memorydb ? 1 : 0

  name_prefix = "${var.name}-"
  family      = local.family
  description = "Rivulet durable log: noeviction"

  # A durable log must refuse writes when memory is full rather than evict stream entries.
  # Rivulet checks the policy at start-up where CONFIG is allowed; managed services refuse
  # CONFIG, so this parameter group is what guarantees it.
  parameter {
    name  = "maxmemory-policy"
    value = "noeviction"
  }

  tags = local.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_memorydb_user" "this" {
  count = local.memorydb ? 1 : 0

  user_name = var.user_name
  # Every key and channel: Rivulet uses Streams, hashes, sorted sets, Lua and pub/sub under
  # its key prefix. (CONFIG is refused by MemoryDB anyway; Rivulet then logs that it could not
  # check maxmemory-policy, which the parameter group sets.)
  access_string = "on ~* &* +@all"

  authentication_mode {
    type      = "password"
    passwords = [random_password.auth.result]
  }

  tags = local.tags
}

resource "aws_memorydb_acl" "this" {
  count = local.memorydb ? 1 : 0

  name       = "${var.name}-redis"
  user_names = [aws_memorydb_user.this[0].user_name]
  tags       = local.tags
}

resource "aws_memorydb_cluster" "this" {
  count = local.memorydb ? 1 : 0

  name           = var.name
  description    = "Rivulet durable log"
  engine         = var.engine
  engine_version = var.engine_version
  node_type      = local.node_type
  port           = local.port

  # One shard: Rivulet's client is a plain (non-cluster) client. Its key layout is cluster
  # ready (every stream's keys share a hash tag), the client is not.
  num_shards             = 1
  num_replicas_per_shard = var.memorydb_replicas

  acl_name             = aws_memorydb_acl.this[0].name
  parameter_group_name = aws_memorydb_parameter_group.this[0].name
  subnet_group_name    = aws_memorydb_subnet_group.this[0].name
  security_group_ids   = [aws_security_group.this.id]

  tls_enabled = true
  kms_key_arn = local.kms_key_arn

  snapshot_retention_limit   = var.snapshot_retention_days
  snapshot_window            = var.snapshot_window
  maintenance_window         = var.maintenance_window
  final_snapshot_name        = var.final_snapshot ? "${var.name}-final" : null
  sns_topic_arn              = var.sns_topic_arn != "" ? var.sns_topic_arn : null
  auto_minor_version_upgrade = true

  tags = local.tags

  lifecycle {
    precondition {
      condition     = var.memorydb_replicas == 0 || var.cluster_aware_client
      error_message = "MemoryDB is always in cluster mode: with replicas, its cluster endpoint can hand Rivulet's plain Redis client a replica that answers MOVED. Keep memorydb_replicas = 0 (durability does not depend on replicas), use engine_kind = \"elasticache\" for failover, or set cluster_aware_client = true once the client speaks Redis Cluster."
    }
  }
}

# ---------------------------------------------------------------------------------------------
# ElastiCache (cluster mode disabled: one primary, asynchronous replicas)
# ---------------------------------------------------------------------------------------------

resource "aws_elasticache_subnet_group" "this" {
  count = local.elasticache ? 1 : 0

  name        = "${var.name}-redis"
  description = "Rivulet durable log"
  subnet_ids  = var.subnet_ids
  tags        = local.tags
}

resource "aws_elasticache_parameter_group" "this" {
  count = local.elasticache ? 1 : 0

  name        = "${var.name}-redis-${replace(local.family, ".", "-")}"
  family      = local.family
  description = "Rivulet durable log: noeviction, cluster mode off"

  # A durable log must refuse writes when memory is full rather than evict stream entries.
  parameter {
    name  = "maxmemory-policy"
    value = "noeviction"
  }

  # Rivulet's client is a plain (non-cluster) client.
  parameter {
    name  = "cluster-enabled"
    value = "no"
  }

  tags = local.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_elasticache_replication_group" "this" {
  count = local.elasticache ? 1 : 0

  replication_group_id = var.name
  description          = "Rivulet durable log"
  engine               = var.engine
  engine_version       = var.engine_version
  node_type            = local.node_type
  port                 = local.port
  parameter_group_name = aws_elasticache_parameter_group.this[0].name
  subnet_group_name    = aws_elasticache_subnet_group.this[0].name
  security_group_ids   = [aws_security_group.this.id]

  # Cluster mode off: Rivulet's client talks to one primary endpoint.
  cluster_mode               = "disabled"
  num_cache_clusters         = 1 + var.elasticache_replicas
  automatic_failover_enabled = true
  multi_az_enabled           = true

  transit_encryption_enabled = true
  transit_encryption_mode    = "required"
  at_rest_encryption_enabled = true
  kms_key_id                 = local.kms_key_arn
  auth_token                 = random_password.auth.result
  auth_token_update_strategy = "ROTATE"

  snapshot_retention_limit   = var.snapshot_retention_days
  snapshot_window            = var.snapshot_window
  maintenance_window         = var.maintenance_window
  final_snapshot_identifier  = var.final_snapshot ? "${var.name}-final" : null
  notification_topic_arn     = var.sns_topic_arn != "" ? var.sns_topic_arn : null
  auto_minor_version_upgrade = true
  apply_immediately          = var.apply_immediately

  tags = local.tags
}
