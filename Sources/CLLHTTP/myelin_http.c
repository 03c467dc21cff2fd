#include "myelin_http.h"
