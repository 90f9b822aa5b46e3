#include "audit/audit_log.hpp"
