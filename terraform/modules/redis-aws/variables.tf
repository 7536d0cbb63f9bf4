variable "name" {
  type        = string
  description = "Name of the Redis deployment: the MemoryDB cluster / ElastiCache replication group, and the prefix of its subnet group, parameter group, security group, ACL and KMS alias."
  default     = "rivulet"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,32}[a-z0-9]$", var.name))
    error_message = "The name must be 2-34 characters of a-z, 0-9 and -, start with a letter and not end with -."
  }
}

variable "engine_kind" {
  type        = string
  description = "Which managed service: \"memorydb\" (durable multi-AZ transaction log: an acknowledged write survives node loss) or \"elasticache\" (replication group: asynchronous replicas + snapshots). See README.md for what each guarantees."
  default     = "memorydb"

  validation {
    condition     = contains(["memorydb", "elasticache"], var.engine_kind)
    error_message = "The engine_kind must be \"memorydb\" or \"elasticache\"."
  }
}

variable "engine" {
  type        = string
  description = "Engine: \"valkey\" or \"redis\" (Redis OSS). Both speak the protocol Rivulet uses (Streams, Lua, pub/sub)."
  default     = "valkey"

  validation {
    condition     = contains(["valkey", "redis"], var.engine)
    error_message = "The engine must be \"valkey\" or \"redis\"."
  }
}

variable "engine_version" {
  type        = string
  description = "Engine version, major.minor (e.g. 7.2 for Valkey, 7.1 for Redis OSS on MemoryDB). Rivulet needs 7.0 or later."
  default     = "7.2"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+$", var.engine_version)) && try(tonumber(split(".", var.engine_version)[0]) >= 7, false)
    error_message = "The engine_version must be major.minor, 7.0 or later."
  }
}

variable "parameter_group_family" {
  type        = string
  description = "Parameter group family. Empty: derived from engine_kind, engine and the major of engine_version (memorydb_valkey7, valkey7, redis7, ...)."
  default     = ""
}

variable "node_type" {
  type        = string
  description = "Node type. Empty: db.r7g.large (MemoryDB) or cache.r7g.large (ElastiCache). Size it so the log's retention fits in memory: with noeviction a full node refuses writes."
  default     = ""

  validation {
    condition     = var.node_type == "" || can(regex("^(db|cache)\\.[a-z0-9]+\\.[a-z0-9]+$", var.node_type))
    error_message = "The node_type must be empty or look like db.r7g.large / cache.r7g.large."
  }
}

variable "memorydb_replicas" {
  type        = number
  description = "MemoryDB replicas per shard (0-5). Default 0: durability comes from MemoryDB's transaction log, not from replicas, and a MemoryDB replica is only usable by a Redis-Cluster-aware client (set cluster_aware_client; Rivulet's client is not, today). A replica adds fast failover."
  default     = 0

  validation {
    condition     = var.memorydb_replicas >= 0 && var.memorydb_replicas <= 5 && floor(var.memorydb_replicas) == var.memorydb_replicas
    error_message = "The memorydb_replicas must be a whole number from 0 to 5."
  }
}

variable "elasticache_replicas" {
  type        = number
  description = "ElastiCache read replicas (1-5), spread over Availability Zones; Multi-AZ automatic failover is always on. (Zero is refused: a lone ElastiCache node that fails loses everything since the last snapshot.)"
  default     = 1

  validation {
    condition     = var.elasticache_replicas >= 1 && var.elasticache_replicas <= 5 && floor(var.elasticache_replicas) == var.elasticache_replicas
    error_message = "The elasticache_replicas must be a whole number from 1 to 5."
  }
}

variable "cluster_aware_client" {
  type        = bool
  description = "Set true only once Rivulet's Redis client speaks Redis Cluster. MemoryDB is always in cluster mode: its endpoint may hand a plain client a replica, which answers MOVED; so without this, MemoryDB is limited to one node per shard."
  default     = false
}

variable "vpc_id" {
  type        = string
  description = "VPC the Redis nodes and their security group live in."

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "The vpc_id must look like vpc-0123abcd."
  }
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets for the subnet group; give subnets in at least two Availability Zones for Multi-AZ."

  validation {
    condition     = length(var.subnet_ids) >= 1 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "The subnet_ids must be a non-empty list of subnet-... ids."
  }
}

variable "allowed_security_group_ids" {
  type        = list(string)
  description = "Security groups (e.g. the EKS node or pod security group) allowed to reach Redis on port 6379."
  default     = []
}

variable "allowed_cidr_blocks" {
  type        = list(string)
  description = "IPv4 CIDR blocks allowed to reach Redis on port 6379 (keep them private; prefer allowed_security_group_ids)."
  default     = []

  validation {
    condition     = alltrue([for c in var.allowed_cidr_blocks : can(cidrnetmask(c)) && c != "0.0.0.0/0"])
    error_message = "Each allowed_cidr_blocks entry must be an IPv4 CIDR block, and not 0.0.0.0/0."
  }
}

variable "kms_key_arn" {
  type        = string
  description = "ARN of a customer managed KMS key for encryption at rest. Empty: the module creates one (with rotation)."
  default     = ""

  validation {
    condition     = var.kms_key_arn == "" || can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "The kms_key_arn must be empty or a KMS key ARN."
  }
}

variable "snapshot_retention_days" {
  type        = number
  description = "Days automatic daily snapshots are kept (1-35)."
  default     = 7

  validation {
    condition     = var.snapshot_retention_days >= 1 && var.snapshot_retention_days <= 35
    error_message = "The snapshot_retention_days must be from 1 to 35: a durable log keeps snapshots."
  }
}

variable "snapshot_window" {
  type        = string
  description = "Daily UTC window (hh:mm-hh:mm, at least 60 minutes) in which the snapshot starts; must not overlap maintenance_window."
  default     = "03:00-05:00"

  validation {
    condition     = can(regex("^[0-2][0-9]:[0-5][0-9]-[0-2][0-9]:[0-5][0-9]$", var.snapshot_window))
    error_message = "The snapshot_window must look like 03:00-05:00."
  }
}

variable "maintenance_window" {
  type        = string
  description = "Weekly UTC maintenance window (ddd:hh:mm-ddd:hh:mm, at least 60 minutes)."
  default     = "sun:05:30-sun:07:30"

  validation {
    condition     = can(regex("^(mon|tue|wed|thu|fri|sat|sun):[0-2][0-9]:[0-5][0-9]-(mon|tue|wed|thu|fri|sat|sun):[0-2][0-9]:[0-5][0-9]$", var.maintenance_window))
    error_message = "The maintenance_window must look like sun:05:30-sun:07:30."
  }
}

variable "final_snapshot" {
  type        = bool
  description = "Take a final snapshot named <name>-final when the cluster is destroyed."
  default     = true
}

variable "user_name" {
  type        = string
  description = "MemoryDB ACL user Rivulet authenticates as (ElastiCache uses the AUTH token and no user name)."
  default     = "rivulet"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,39}$", var.user_name)) && var.user_name != "default"
    error_message = "The user_name must be up to 40 characters of a-z, 0-9, - and not \"default\"."
  }
}

variable "sns_topic_arn" {
  type        = string
  description = "SNS topic for cluster events (failover, snapshot failures). Empty: none."
  default     = ""
}

variable "apply_immediately" {
  type        = bool
  description = "ElastiCache: apply modifications now instead of in the next maintenance window (may restart nodes)."
  default     = false
}

variable "tags" {
  type        = map(string)
  description = "Tags for every AWS resource the module creates."
  default     = {}
}
