export {
  APICURIO_VERSION,
  DEFAULT_KAFKA_VERSION,
  KAFKA_VERSION,
  kafkaClasspath,
  kafkaVersion,
} from './artifacts.js';
export { DevStackError } from './errors.js';
export {
  type ProcessState,
  restartStackProcess,
  type StackInfo,
  type StackOptions,
  type StackPart,
  type StackPartName,
  type StackPartState,
  type StackProcess,
  stackDown,
  stackHealth,
  stackHome,
  stackParts,
  stackStatus,
  stackUp,
  stopStackProcess,
} from './stack.js';
